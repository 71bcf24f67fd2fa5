# language: fr
@exigence=SC.MSS/CONF.20 @exigence=SC.MSS/UX.41
Fonctionnalité: SC.MSS/CONF.20, SC.MSS/UX.41 — Recherche multicritère d'un correspondant dans l'annuaire santé
  Le LGC cherche l'adresse MSSanté d'un correspondant en interrogeant l'annuaire santé sur plusieurs critères à la
  fois — nom, prénom, ville d'exercice — avec sa clé d'API (SC.MSS/CONF.20). Il affiche les champs de l'annuaire qui
  permettent de choisir le bon interlocuteur : profession, lieu d'exercice, adresses MSSanté, mais jamais une
  adresse en liste rouge (SC.MSS/UX.41). Un annuaire indisponible est signalé sans bloquer le logiciel.

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect

  Scénario: Deux homonymes distingués, la ville départage, la liste rouge reste cachée
    Quand le médecin cherche "MARTIN" "SOPHIE" dans l'annuaire
    Alors l'annuaire affiche 2 professionnelles "SOPHIE MARTIN", distinguées par leur profession, leur lieu d'exercice et leur adresse MSSanté
    Et l'adresse en liste rouge renvoyée par l'annuaire n'est pas affichée
    Quand le médecin cherche "MARTIN" "SOPHIE" exerçant à "CLERMONT-FERRAND" dans l'annuaire
    Alors l'annuaire n'affiche que la professionnelle de "CLERMONT-FERRAND"
    Et l'annuaire a reçu ces recherches avec la clé d'API, le nom, le prénom et la ville en critère chaîné
    Étant donné l'annuaire santé répond « 503 service indisponible »
    Quand le médecin cherche "DUPONT" "" dans l'annuaire
    Alors la recherche est en échec avec son motif, sans bloquer le logiciel
