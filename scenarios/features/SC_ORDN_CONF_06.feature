# language: fr
@exigence=SC.ORDN/CONF.06 @exigence=SC.CDA/DD.21
Fonctionnalité: SC.ORDN/CONF.06, SC.CDA/DD.21 — Prescription médicaments structurée envoyée au DMP
  Le LGC qui produit la prescription de produits de santé en CDA R2 N3 (profil « Prescription médicaments
  structurée ») l'envoie ainsi au DMP : un corps structuré, une entrée par produit prescrit, et la section qui
  porte la copie PDF de l'ordonnance remise au patient (DSR : en vague 2, les documents structurés sont produits
  en CDA R2 N3 avec une section portant le PDF). Un seul document dans le DMP, sous l'identifiant du CDA.

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect
    Et l'identité de "BOUCHER" est qualifiée par l'Appli carte Vitale "167100093480710"

  Scénario: L'ordonnance validée part au DMP en CDA R2 N3, avec sa copie PDF
    Quand le médecin rédige une ordonnance de produits de santé
    Et le médecin valide l'ordonnance
    Alors l'ordonnance est envoyée au DMP
    Et le DMP a reçu l'ordonnance structurée (CDA R2 N3) : une entrée par produit, et sa copie PDF
